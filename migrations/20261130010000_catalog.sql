-- The topology catalog: clusters, nodes and services can be created, edited and removed
-- through the API, not only by first registration, and each can carry a short description
-- for people ("payments, PCI scope", "rack 4, row B").
--
-- Bounded and free of control characters here as well as at the API's edge
-- (app::model::catalog), so no other writer can store what the API would refuse. The class is
-- spelled out (C0, DEL, C1: Unicode's Cc, which is what the API refuses) rather than
-- [[:cntrl:]], whose meaning depends on the database's locale.

ALTER TABLE clusters ADD COLUMN description TEXT
    CHECK (char_length(description) <= 500 AND description !~ '[\x01-\x1f\x7f-\x9f]');
ALTER TABLE nodes ADD COLUMN description TEXT
    CHECK (char_length(description) <= 500 AND description !~ '[\x01-\x1f\x7f-\x9f]');
ALTER TABLE services ADD COLUMN description TEXT
    CHECK (char_length(description) <= 500 AND description !~ '[\x01-\x1f\x7f-\x9f]');
