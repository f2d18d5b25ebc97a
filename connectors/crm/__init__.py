"""The CRM edge: a small CRM-neutral protocol (connectors/crm/base.py) and its Salesforce implementation."""
