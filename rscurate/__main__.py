"""`python -m rscurate`: the `rscurate` command."""

from rscurate.launch import main

if __name__ == "__main__":
    main()
