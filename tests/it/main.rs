//! End-to-end tests: the real server on an ephemeral loopback port, a real SQLite file written by a
//! separate connection, the demo scripts (or scripts written to a temp folder), and a real receiver.

mod admin;
mod admin_pages;
mod api_errors;
mod app_db;
mod backfills;
mod browser;
mod cli;
mod cluster;
mod crash;
mod delivery;
mod faults;
mod filters;
mod languages;
mod operations;
mod pg_server;
mod postgresql;
mod rate_limits;
mod reload;
mod scripts;
mod security;
mod spine;
mod sqlite;
mod storage;
mod support;
mod test_sends;
