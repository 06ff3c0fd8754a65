from atm_bench.cli import main

raise SystemExit(main())
