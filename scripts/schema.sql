-- The demo CRM: companies, their projects, contacts and deals.
-- herald applies this file at every start, so every statement is idempotent.

CREATE TABLE IF NOT EXISTS Company (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT
);

CREATE TABLE IF NOT EXISTS Project (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES Company(id),
    name TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS Contact (
    id INTEGER PRIMARY KEY,
    company_id INTEGER REFERENCES Company(id),
    first_name TEXT,
    last_name TEXT,
    email TEXT
);

CREATE TABLE IF NOT EXISTS Deal (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    amount REAL,
    stage TEXT NOT NULL DEFAULT 'lead',
    is_project INTEGER NOT NULL DEFAULT 0,
    company_id INTEGER REFERENCES Company(id),
    project_id INTEGER REFERENCES Project(id),
    contact_id INTEGER REFERENCES Contact(id),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- A few rows, only into empty tables, so that a row the user deleted is not put back.
INSERT INTO Company (id, name, city)
    SELECT * FROM (VALUES (1, 'Acme Construction', 'Lyon'), (2, 'Borealis Builders', 'Hamburg'))
    WHERE NOT EXISTS (SELECT 1 FROM Company);
INSERT INTO Project (id, company_id, name)
    SELECT * FROM (VALUES (10, 1, 'Lyon Part-Dieu tower'), (20, 2, 'Hafen City offices'))
    WHERE NOT EXISTS (SELECT 1 FROM Project);
INSERT INTO Contact (id, company_id, first_name, last_name, email)
    SELECT * FROM (VALUES (100, 1, 'Camille', 'Martin', 'camille.martin@acme.example'),
                          (200, 2, 'Jonas', 'Weber', 'jonas.weber@borealis.example'))
    WHERE NOT EXISTS (SELECT 1 FROM Contact);
INSERT INTO Deal (id, title, amount, stage, is_project, company_id, project_id, contact_id)
    SELECT * FROM (VALUES (1000, 'Facade renovation', 120000.0, 'proposal', 1, 1, 10, 100),
                          (1001, 'Office fit-out', 45000.0, 'lead', 0, 2, 20, 200))
    WHERE NOT EXISTS (SELECT 1 FROM Deal);
