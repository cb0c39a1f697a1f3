from voice_sim.cli import main

raise SystemExit(main())
