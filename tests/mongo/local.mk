# tests/mongo
