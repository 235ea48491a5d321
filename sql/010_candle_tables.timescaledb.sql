-- Nothing in TimescaleDB mode: its continuous aggregates (003, 008) are the materialized
-- candles; portable mode gets tables of its own in 010_candle_tables.portable.sql.
SELECT 1;
