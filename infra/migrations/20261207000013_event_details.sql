-- What a buyer reads about an event before paying (issue 19.6/19.12): a description,
-- who organises it (named in every e-mail, with an address buyers may write to), and
-- the sale window — holds are refused before it opens and after it closes, whatever
-- the queue says. `hosts_see_buyer_emails` is the event owner's choice to let hosts
-- of this event see buyers' addresses in full; by default a host sees them masked.
ALTER TABLE events
    ADD COLUMN description            text NOT NULL DEFAULT ''
                                      CHECK (length(description) <= 4000),
    ADD COLUMN organiser              text NOT NULL DEFAULT ''
                                      CHECK (length(organiser) <= 200),
    ADD COLUMN organiser_email        text
                                      CHECK (organiser_email IS NULL OR organiser_email ~ '^[^@\s]+@[^@\s]+$'),
    ADD COLUMN sales_open_at          timestamptz,
    ADD COLUMN sales_close_at         timestamptz,
    ADD COLUMN hosts_see_buyer_emails boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT events_sale_window CHECK (
        sales_open_at IS NULL OR sales_close_at IS NULL OR sales_close_at > sales_open_at);

