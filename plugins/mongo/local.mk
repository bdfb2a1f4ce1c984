# plugins/mongo: filled in by its issue
