#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/migrate/sqlite_postgres.sh: the two-context project sqlite-postgres (tests/migrate/project.sh).
exec "${EMH_SRCDIR:-.}/tests/migrate/project.sh" sqlite-postgres
