-- How long raw ticks are kept, in both modes (`deno task setup --retain-ticks 30d`): retain
-- NULL keeps them for ever. horizon is the instant below which ticks have been deleted
-- (portable mode; NULL while nothing has been): candles there are final, since their ticks
-- are gone (docs/candles.md, "Lifecycle").
CREATE TABLE IF NOT EXISTS tickpipe_retention (
  one_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (one_row),
  retain INTERVAL,
  horizon TIMESTAMPTZ
);
INSERT INTO tickpipe_retention DEFAULT VALUES ON CONFLICT DO NOTHING;
