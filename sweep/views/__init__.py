"""What people see: the live terminal view (``progress``) and the report (``report``)."""
