"""ARTS POSLog (2.x and 6.x namespaces, vendor extensions): the reader, the stream of
transactions, the body of one transaction, its tenders, and the parser that joins them."""
