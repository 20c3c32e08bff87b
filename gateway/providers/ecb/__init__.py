"""The European Central Bank's euro reference rates: the daily feed's wire format (not a
channel provider; `gateway.services.exchange` fetches and stores it)."""
