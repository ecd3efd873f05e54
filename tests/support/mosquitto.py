"""A real Mosquitto broker for tests (the same helper the demo and chaos runs use)."""

from __future__ import annotations

from lab.broker import Mosquitto, free_port, mosquitto_binary

__all__ = ["Mosquitto", "free_port", "mosquitto_binary"]
