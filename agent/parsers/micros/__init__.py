"""Oracle MICROS exports: Simphony guest checks (JSON, `getGuestChecks`) and RES
journal/check files, read into the canonical records by one parser."""
