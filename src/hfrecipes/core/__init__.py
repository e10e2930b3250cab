"""Layer 0, what every other package builds on: errors, arguments and config parsing, atomic I/O, media decoding,
the catalogue of shipped files, THE stage life cycle (`stages`), lineage and the Hub, training helpers and guards,
efficiency accounting and reports. It imports nothing else from hfrecipes."""
