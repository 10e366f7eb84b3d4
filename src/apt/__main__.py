from apt.cli import main

raise SystemExit(main())
