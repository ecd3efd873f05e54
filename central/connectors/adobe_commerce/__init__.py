"""The Adobe Commerce (Magento 2) target: orders with their invoices, credit memos for
returns, cancelled baskets, over the REST API with OAuth 1.0a or a bearer token."""
