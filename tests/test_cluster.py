"""apt.cluster: the start-up check that refuses a SLURM cluster where the executor plugin could
not follow its jobs, on `scontrol show config` texts as SLURM prints them."""

import pytest

from apt.cluster import check_job_tracking, parse_show_config, status_command_used
from apt.errors import AptError

SHOW_CONFIG = """Configuration data as of 2026-01-01T00:00:00
AccountingStorageType   = accounting_storage/slurmdbd
MinJobAge               = {age}
SlurmctldPort           = 6817
"""


def _conf(age="300 sec", accounting="accounting_storage/slurmdbd"):
    return parse_show_config(SHOW_CONFIG.format(age=age).replace(
        "accounting_storage/slurmdbd", accounting))


def _never():
    raise AssertionError("sacct probed although squeue is used")


def test_parse_show_config_reads_keys_and_values():
    conf = _conf()
    assert conf["MinJobAge"] == "300 sec" and conf["SlurmctldPort"] == "6817"


@pytest.mark.parametrize("age, init, used", [
    ("300 sec", 40, "squeue"), ("120 sec", 40, "squeue"), ("119 sec", 40, "sacct"),
    ("60 sec", 20, "squeue"), ("1h", 40, "squeue"), ("0 sec", 5, "sacct")])
def test_squeue_only_where_min_job_age_covers_three_status_checks(age, init, used):
    assert status_command_used("squeue", init, _conf(age)) == used
    assert status_command_used("sacct", init, _conf(age)) == "sacct"
    assert status_command_used(None, init, _conf(age)) == "sacct"


def test_squeue_with_enough_min_job_age_needs_no_accounting():
    assert check_job_tracking("squeue", 40, _conf(accounting="accounting_storage/none"),
                              _never) == []


@pytest.mark.parametrize("status_command, age", [("squeue", "100 sec"), ("sacct", "300 sec")])
def test_sacct_without_accounting_is_refused_with_what_to_do(status_command, age):
    with pytest.raises(AptError, match=r"wait forever.*MinJobAge >= 120 s"):
        check_job_tracking(status_command, 40,
                           _conf(age, accounting="accounting_storage/none"), _never)


def test_sacct_that_does_not_answer_is_refused_naming_its_error():
    with pytest.raises(AptError, match="Unable to contact slurm controller"):
        check_job_tracking("sacct", 40, _conf(),
                           lambda: "sacct: error: Unable to contact slurm controller")


def test_working_sacct_is_a_warning_about_cancelled_jobs():
    (warning,) = check_job_tracking("squeue", 40, _conf("100 sec"), lambda: None)
    assert "CANCELLED by <uid>" in warning and "MinJobAge=100 sec is below 120 s" in warning
