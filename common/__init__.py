"""Runtime code the store agent and the central relay share (not the contract between
them, which is `agent.contract`). Imports neither `agent` nor `central`."""
