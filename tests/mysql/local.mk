# tests/mysql
