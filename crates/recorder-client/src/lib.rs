//! Transport from the kubescribe proxy to its recorders: event delivery with failover, deadlines and an on-disk spool, session uploads over h2c with acks, and the fail-open/fail-closed policy.
