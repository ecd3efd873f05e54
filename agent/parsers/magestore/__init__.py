"""Magestore POS exports: order JSON as Magento's REST API writes it, and the CSV export."""
