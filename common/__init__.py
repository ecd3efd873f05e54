"""The runtime both programs share: logging and redaction, config loading, file modes,
service notification, signal handling and the daemon runner.

`agent` and `central` may import it; it imports neither of them, only the contract."""
