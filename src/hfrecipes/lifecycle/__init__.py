"""`hfrecipes run`: a lifecycle file's recipe stages run in order (`runner`), checked first (`config_check`),
summed up in report.md (`report`)."""
