"""Entry point of the frozen Windows service host (`tillbridge-agent-service.exe`)."""

from agent.service import main

if __name__ == "__main__":
    main()
