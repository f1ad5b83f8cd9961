"""MLflow: the client and URIs, the tracker (Tune events -> writer operations), the writer process, readers, export."""
