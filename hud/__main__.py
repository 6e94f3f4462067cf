"""`python -m hud` entry point."""
from hud.cli import main

if __name__ == "__main__":
    main()
