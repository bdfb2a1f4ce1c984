#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/migrate/mariadb_mongo.sh: the two-context project mariadb-mongo (tests/migrate/project.sh).
exec "${EMH_SRCDIR:-.}/tests/migrate/project.sh" mariadb-mongo
