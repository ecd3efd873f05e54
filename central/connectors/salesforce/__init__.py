"""The Salesforce target: orders, reduction orders and payments, over the REST API
with the My Domain login."""
