"""Entry point of the frozen agent: the same command line as `tillbridge-agent`."""

from agent.cli import main

if __name__ == "__main__":
    main()
