from kmem_exporter.cli import main

raise SystemExit(main())
