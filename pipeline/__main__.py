"""``python -m pipeline analyze PATH... --out results.jsonl`` (see :mod:`pipeline.batch`)."""
from .batch import main

raise SystemExit(main())
