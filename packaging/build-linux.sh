#!/usr/bin/env bash
# Build the agent's Linux onedir bundle and smoke-test it:
#   packaging/build-linux.sh [DIST_DIR]     (default: dist/)
# Run from a checkout after `make setup`; the bundle lands in DIST_DIR/tillbridge-agent/.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST="${1:-dist}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

.venv/bin/pyinstaller --noconfirm --log-level WARN \
    --distpath "$DIST" --workpath "$WORK/build" packaging/pyinstaller/tillbridge-agent.spec

AGENT="$DIST/tillbridge-agent/tillbridge-agent"
"$AGENT" --version
"$AGENT" self-test --config config.example.toml
"$AGENT" config check --config config.example.toml
printf '%s\n' \
  '<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/"><Transaction>' \
  '<RetailStoreID>0042</RetailStoreID><WorkstationID>1</WorkstationID>' \
  '<SequenceNumber>7</SequenceNumber><BusinessDayDate>2024-05-01</BusinessDayDate>' \
  '<EndDateTime>2024-05-01T10:00:00+02:00</EndDateTime><CurrencyCode>EUR</CurrencyCode>' \
  '<RetailTransaction TransactionStatus="Totaled"><LineItem><SequenceNumber>1</SequenceNumber>' \
  '<Sale><ItemID>1</ItemID><ExtendedAmount>1.00</ExtendedAmount><Quantity>1</Quantity></Sale>' \
  '</LineItem><Total TotalType="TransactionGrandAmount">1.00</Total></RetailTransaction>' \
  '</Transaction></POSLog>' > "$WORK/sample.xml"
"$AGENT" parse "$WORK/sample.xml" --format poslog
echo "Built and smoke-tested $DIST/tillbridge-agent/"
