-- Columnstore on the minute and hour candles (TimescaleDB 2.18+), after 003_candles.
-- Segmented by symbol (the default changed to unsegmented in 2.25), ordered by bucket.
ALTER MATERIALIZED VIEW one_minute_candle SET (
  timescaledb.enable_columnstore = true,
  timescaledb.segmentby = 'symbol',
  timescaledb.orderby = 'bucket DESC'
);
CALL add_columnstore_policy('one_minute_candle', after => INTERVAL '7 days', if_not_exists => true);

ALTER MATERIALIZED VIEW one_hour_candle SET (
  timescaledb.enable_columnstore = true,
  timescaledb.segmentby = 'symbol',
  timescaledb.orderby = 'bucket DESC'
);
CALL add_columnstore_policy('one_hour_candle', after => INTERVAL '35 days', if_not_exists => true);
