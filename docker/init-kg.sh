#!/usr/bin/env bash
# First start of the postgres container: a role and database for the knowledge graph.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE kg LOGIN PASSWORD '${KG_PASSWORD}';
CREATE DATABASE knowledge_graph OWNER kg;
SQL
