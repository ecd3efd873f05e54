"""The runtime both programs share: the messaging seam (`common.messaging`), logging and
redaction, config loading, the command-line base, file modes, service notification,
signal handling and the daemon runner.

`agent` and `central` may import it; it imports neither of them, only the contract."""
