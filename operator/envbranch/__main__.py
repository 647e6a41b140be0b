"""`python -m envbranch`: run the operator."""

from envbranch.main import main

if __name__ == "__main__":
    raise SystemExit(main())
