"""Build the Text2SQL example: a small shop database and knowledge slices of its schema and rules.

Writes, next to this script (or into ``--out DIR``):

- ``shop.db``: SQLite, 4 tables (customers, products, orders, order_items), 55 rows, the same
  bytes of data on every run;
- ``schema_slices.jsonl``: 4 knowledge slices, each the CREATE TABLE statements of a part of
  the schema with short documentation of its tables and business rules (one slice in Chinese).

Then distil Text2SQL pairs from the slices, every generated query run against ``shop.db`` by
the SQL gate: see ``README.md`` in this folder.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

HERE = Path(__file__).resolve().parent

CUSTOMERS_DDL = """CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    signup_date TEXT NOT NULL,
    is_vip INTEGER NOT NULL DEFAULT 0
);"""

PRODUCTS_DDL = """CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL CHECK (price > 0),
    stock INTEGER NOT NULL DEFAULT 0
);"""

ORDERS_DDL = """CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    order_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    total_amount REAL NOT NULL
);"""

ORDER_ITEMS_DDL = """CREATE TABLE order_items (
    order_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price REAL NOT NULL,
    PRIMARY KEY (order_id, product_id),
    FOREIGN KEY (order_id) REFERENCES orders(id),
    FOREIGN KEY (product_id) REFERENCES products(id)
);"""

CUSTOMERS = [
    (1, "Alice Chen", "Shanghai", "2023-01-15", 1),
    (2, "Bob Li", "Beijing", "2023-02-03", 0),
    (3, "Carol Wang", "Shenzhen", "2023-02-20", 0),
    (4, "David Zhao", "Shanghai", "2023-03-11", 1),
    (5, "Eva Liu", "Hangzhou", "2023-04-02", 0),
    (6, "Frank Sun", "Beijing", "2023-05-18", 0),
    (7, "Grace Zhou", "Chengdu", "2023-06-07", 1),
    (8, "Henry Wu", "Shenzhen", "2023-07-23", 0),
    (9, "Iris Xu", "Hangzhou", "2023-08-30", 0),
    (10, "Jack Ma", "Chengdu", "2023-09-14", 0),
]

PRODUCTS = [
    (1, "Green Tea 250g", "tea", 48.0, 120),
    (2, "Oolong Tea 250g", "tea", 66.0, 80),
    (3, "Pu-erh Cake 357g", "tea", 158.0, 25),
    (4, "Porcelain Teapot", "teaware", 129.0, 30),
    (5, "Glass Tea Cup x6", "teaware", 59.0, 60),
    (6, "Bamboo Tea Tray", "teaware", 210.0, 12),
    (7, "Jasmine Tea 100g", "tea", 35.5, 200),
    (8, "Travel Tea Set", "teaware", 188.0, 0),
]

# (id, customer_id, order_date, status, [(product_id, quantity)])
_ORDERS = [
    (1, 1, "2024-01-05", "shipped", [(1, 2), (5, 1)]),
    (2, 2, "2024-01-09", "paid", [(3, 1)]),
    (3, 1, "2024-01-21", "shipped", [(2, 1), (4, 1)]),
    (4, 3, "2024-02-02", "cancelled", [(6, 1)]),
    (5, 4, "2024-02-14", "shipped", [(7, 4), (5, 2)]),
    (6, 5, "2024-02-28", "pending", [(1, 1)]),
    (7, 6, "2024-03-03", "paid", [(8, 1), (2, 2)]),
    (8, 7, "2024-03-17", "shipped", [(3, 2), (4, 1)]),
    (9, 4, "2024-03-30", "cancelled", [(1, 3)]),
    (10, 8, "2024-04-06", "shipped", [(7, 2), (2, 1)]),
    (11, 9, "2024-04-19", "paid", [(5, 1), (6, 1)]),
    (12, 1, "2024-05-02", "pending", [(3, 1), (7, 1)]),
    (13, 7, "2024-05-15", "shipped", [(1, 1)]),
    (14, 2, "2024-05-27", "shipped", [(4, 1), (7, 2)]),
]

PRICES = {p[0]: p[3] for p in PRODUCTS}
ORDER_ITEMS = [
    (oid, pid, qty, PRICES[pid]) for oid, _, _, _, items in _ORDERS for pid, qty in items
]
ORDERS = [
    (oid, cid, day, status, round(sum(qty * PRICES[pid] for pid, qty in items), 2))
    for oid, cid, day, status, items in _ORDERS
]

SLICES = [
    {
        "id": "shop-customers",
        "content": (
            "# Shop database: customers\n\n"
            f"{CUSTOMERS_DDL}\n\n"
            "The customers table has one row per registered customer of the online tea shop. "
            "`city` is the city of the default shipping address. `signup_date` is the ISO date "
            "(YYYY-MM-DD) the account was created. `is_vip` is 1 for members of the VIP "
            "programme and 0 otherwise; VIP customers get free shipping on every order. A "
            "customer is called active when they placed at least one order that was not "
            "cancelled."
        ),
        "metadata": {"tables": ["customers"]},
    },
    {
        "id": "shop-products",
        "content": (
            "# Shop database: products\n\n"
            f"{PRODUCTS_DDL}\n\n"
            "The products table lists everything the shop sells. `category` is either 'tea' or "
            "'teaware'. `price` is the current list price in yuan, tax included. `stock` is the "
            "number of units in the warehouse; a product with stock 0 is shown as sold out and "
            "cannot be ordered. Prices of past orders are kept in order_items.unit_price, so a "
            "price change never alters an old order."
        ),
        "metadata": {"tables": ["products"]},
    },
    {
        "id": "shop-orders",
        "content": (
            "# Shop database: orders and order items\n\n"
            f"{ORDERS_DDL}\n\n{ORDER_ITEMS_DDL}\n\n"
            "Every order belongs to one customer (`orders.customer_id`). `status` moves from "
            "'pending' (created, not paid) to 'paid' and then 'shipped'; an order may be "
            "'cancelled' before it ships. `total_amount` is the sum of quantity times "
            "unit_price over the order's items. Revenue counts only orders with status 'paid' "
            "or 'shipped'. `order_items` has one row per product in an order, with the price "
            "paid for one unit at the time of the order."
        ),
        "metadata": {"tables": ["orders", "order_items"]},
    },
    {
        "id": "shop-rules-zh",
        "content": (
            "# 网店数据库：业务规则\n\n"
            f"{ORDERS_DDL}\n\n{CUSTOMERS_DDL}\n\n"
            "订单表 orders 的每一行是一张订单，customer_id 指向下单的客户。订单状态 status "
            "只有四种取值：pending（待付款）、paid（已付款）、shipped（已发货）和 cancelled"
            "（已取消）。统计销售额时只计算状态为 paid 或 shipped 的订单，已取消的订单不计入。"
            "total_amount 是订单金额，单位为元。客户表 customers 中 is_vip 为 1 的客户是会员，"
            "会员的订单全部包邮。日期字段均为 YYYY-MM-DD 格式的文本，可以直接按字符串比较大小。"
        ),
        "metadata": {"tables": ["orders", "customers"]},
    },
]


def build_database(path: Path) -> None:
    """Create ``path`` from scratch with the example tables and rows."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        with conn:
            for ddl in (CUSTOMERS_DDL, PRODUCTS_DDL, ORDERS_DDL, ORDER_ITEMS_DDL):
                conn.execute(ddl)
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", CUSTOMERS)
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", PRODUCTS)
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ORDERS)
            conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?)", ORDER_ITEMS)
    finally:
        conn.close()


def write_slices(path: Path) -> None:
    """Write the schema slices as JSONL (one slice per line, UTF-8)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for s in SLICES:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Build ``shop.db`` and ``schema_slices.jsonl``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default: here)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    build_database(args.out / "shop.db")
    write_slices(args.out / "schema_slices.jsonl")
    rows = len(CUSTOMERS) + len(PRODUCTS) + len(ORDERS) + len(ORDER_ITEMS)
    print(f"wrote {args.out / 'shop.db'} ({rows} rows) and {args.out / 'schema_slices.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
