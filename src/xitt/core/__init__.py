"""The bottom layer: content keys, the artifact store, atomic writers, the cell specification
and the bookkeeping of records. It imports nothing else of xitt (but `XittError`) and no torch."""
