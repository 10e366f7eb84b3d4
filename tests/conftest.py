import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import FAMILIES, TINY_TEXT, make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(family)`` -> folder of a tiny random model of that family (cached)."""
    root = tmp_path_factory.mktemp("tiny_models")
    made: dict[str, Path] = {}

    def get(family: str = "llama") -> Path:
        if family not in made:
            made[family] = make_tiny_model(family, root / family)
        return made[family]

    return get


@pytest.fixture(scope="session")
def tiny_text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TINY_TEXT * 20)
    return path


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param
