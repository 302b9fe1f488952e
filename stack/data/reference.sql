-- The reference stack's bundled database: what `queries.run_query` and
-- `monitoring.check_monitor` read. Built into STACK_DATA_DIR on first use and
-- opened read-only. Edit freely: a changed file builds a new database.

CREATE TABLE monitors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    company TEXT NOT NULL
);

CREATE TABLE monitor_thresholds (
    monitor_id TEXT NOT NULL REFERENCES monitors(id),
    metric TEXT NOT NULL,
    min_value REAL,
    max_value REAL,
    PRIMARY KEY (monitor_id, metric)
);

CREATE TABLE readings (
    monitor_id TEXT NOT NULL REFERENCES monitors(id),
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    taken_at TEXT NOT NULL
);

CREATE TABLE sales (
    id INTEGER PRIMARY KEY,
    region TEXT NOT NULL,
    product TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    sold_on TEXT NOT NULL
);

INSERT INTO monitors (id, name, company) VALUES
    ('monitor_123', 'Acme market share', 'Acme Corp'),
    ('monitor_456', 'Globex sentiment', 'Globex'),
    ('monitor_789', 'Initech pricing', 'Initech');

INSERT INTO monitor_thresholds (monitor_id, metric, min_value, max_value) VALUES
    ('monitor_123', 'market_share', 0.15, NULL),
    ('monitor_123', 'revenue_growth', 0.0, NULL),
    ('monitor_123', 'churn_rate', NULL, 0.05),
    ('monitor_456', 'sentiment', -0.2, NULL),
    ('monitor_456', 'mentions', NULL, 5000),
    ('monitor_789', 'price_change', -0.1, 0.1),
    ('monitor_789', 'competitor_count', NULL, 12);

INSERT INTO readings (monitor_id, metric, value, taken_at) VALUES
    ('monitor_123', 'market_share', 0.18, '2025-01-31T12:00:00Z'),
    ('monitor_123', 'revenue_growth', -0.02, '2025-01-31T12:00:00Z'),
    ('monitor_123', 'churn_rate', 0.04, '2025-01-31T12:00:00Z'),
    ('monitor_456', 'sentiment', 0.31, '2025-01-31T12:00:00Z'),
    ('monitor_456', 'mentions', 1200, '2025-01-31T12:00:00Z'),
    ('monitor_789', 'price_change', 0.14, '2025-01-31T12:00:00Z'),
    ('monitor_789', 'competitor_count', 9, '2025-01-31T12:00:00Z');

INSERT INTO sales (id, region, product, quantity, unit_price, sold_on) VALUES
    (1, 'east', 'gadget', 26, 24.0, '2025-03-02'),
    (2, 'north', 'widget', 24, 9.5, '2025-03-02'),
    (3, 'south', 'widget', 6, 9.5, '2025-02-14'),
    (4, 'north', 'gadget', 6, 24.0, '2025-03-14'),
    (5, 'north', 'widget', 15, 9.5, '2025-03-21'),
    (6, 'north', 'doohickey', 4, 57.0, '2025-01-02'),
    (7, 'south', 'gizmo', 27, 3.25, '2025-01-18'),
    (8, 'north', 'gizmo', 36, 3.25, '2025-03-06'),
    (9, 'north', 'gadget', 24, 24.0, '2025-01-18'),
    (10, 'north', 'widget', 40, 9.5, '2025-01-16'),
    (11, 'west', 'gizmo', 30, 3.25, '2025-03-15'),
    (12, 'east', 'gizmo', 16, 3.25, '2025-01-23'),
    (13, 'south', 'widget', 37, 9.5, '2025-02-17'),
    (14, 'west', 'gizmo', 29, 3.25, '2025-02-20'),
    (15, 'north', 'widget', 33, 9.5, '2025-02-06'),
    (16, 'east', 'gadget', 32, 24.0, '2025-02-02'),
    (17, 'north', 'gizmo', 22, 3.25, '2025-03-12'),
    (18, 'west', 'doohickey', 5, 57.0, '2025-01-09'),
    (19, 'west', 'widget', 4, 9.5, '2025-03-23'),
    (20, 'east', 'doohickey', 19, 57.0, '2025-03-13'),
    (21, 'east', 'widget', 30, 9.5, '2025-02-06'),
    (22, 'north', 'doohickey', 4, 57.0, '2025-01-25'),
    (23, 'east', 'gadget', 16, 24.0, '2025-02-13'),
    (24, 'west', 'widget', 11, 9.5, '2025-02-13'),
    (25, 'east', 'gadget', 28, 24.0, '2025-03-09'),
    (26, 'west', 'gizmo', 25, 3.25, '2025-01-05'),
    (27, 'north', 'gadget', 10, 24.0, '2025-01-22'),
    (28, 'south', 'widget', 32, 9.5, '2025-03-06'),
    (29, 'east', 'gizmo', 1, 3.25, '2025-01-14'),
    (30, 'east', 'gizmo', 9, 3.25, '2025-03-28'),
    (31, 'north', 'doohickey', 36, 57.0, '2025-02-13'),
    (32, 'west', 'doohickey', 7, 57.0, '2025-02-21'),
    (33, 'west', 'widget', 13, 9.5, '2025-01-07'),
    (34, 'west', 'gadget', 8, 24.0, '2025-02-20'),
    (35, 'north', 'widget', 1, 9.5, '2025-03-05'),
    (36, 'north', 'gizmo', 40, 3.25, '2025-01-03'),
    (37, 'south', 'doohickey', 10, 57.0, '2025-03-09'),
    (38, 'east', 'gizmo', 31, 3.25, '2025-01-04'),
    (39, 'west', 'doohickey', 31, 57.0, '2025-02-10'),
    (40, 'north', 'gadget', 7, 24.0, '2025-03-11'),
    (41, 'east', 'doohickey', 11, 57.0, '2025-03-01'),
    (42, 'south', 'gizmo', 10, 3.25, '2025-03-18'),
    (43, 'north', 'gizmo', 6, 3.25, '2025-03-28'),
    (44, 'east', 'gizmo', 11, 3.25, '2025-02-25'),
    (45, 'south', 'gizmo', 15, 3.25, '2025-03-26'),
    (46, 'south', 'gadget', 26, 24.0, '2025-03-26'),
    (47, 'south', 'gadget', 34, 24.0, '2025-02-12'),
    (48, 'north', 'widget', 18, 9.5, '2025-02-09'),
    (49, 'south', 'gizmo', 29, 3.25, '2025-03-12'),
    (50, 'east', 'widget', 15, 9.5, '2025-01-08'),
    (51, 'west', 'gadget', 22, 24.0, '2025-01-16'),
    (52, 'north', 'doohickey', 23, 57.0, '2025-03-03'),
    (53, 'north', 'doohickey', 13, 57.0, '2025-02-06'),
    (54, 'west', 'gizmo', 6, 3.25, '2025-03-13'),
    (55, 'west', 'doohickey', 6, 57.0, '2025-03-06'),
    (56, 'south', 'gadget', 2, 24.0, '2025-01-19'),
    (57, 'west', 'gadget', 40, 24.0, '2025-03-16'),
    (58, 'east', 'gadget', 36, 24.0, '2025-03-05'),
    (59, 'north', 'widget', 7, 9.5, '2025-03-24'),
    (60, 'south', 'doohickey', 13, 57.0, '2025-01-01');
