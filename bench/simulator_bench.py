"""Microseconds per simulated tools/call, for a few representative tool schemas.

    python bench/simulator_bench.py [--quick]

cold:     a tool seen for the first time (schemas compiled, nothing cached)
uncached: a known tool, new arguments (validation + generation + output validation)
warm:     the same call again (result cache hit; the answer is still a fresh copy)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import Simulator

SEARCH_INPUT = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
    },
}
CONTACT = {
    "type": "object",
    "required": [
        "id",
        "email",
        "firstName",
        "lastName",
        "createdAt",
        "status",
        "score",
        "tags",
        "address",
        "website",
    ],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string", "format": "email"},
        "firstName": {"type": "string", "minLength": 1, "maxLength": 40},
        "lastName": {"type": "string", "minLength": 1, "maxLength": 40},
        "createdAt": {"type": "string", "format": "date-time"},
        "status": {"enum": ["active", "archived", "lead"]},
        "score": {"type": "number", "minimum": 0, "maximum": 100},
        "tags": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z-]{3,12}$"},
            "maxItems": 5,
            "uniqueItems": True,
        },
        "address": {
            "type": "object",
            "required": ["city", "country"],
            "properties": {
                "city": {"type": "string"},
                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            },
        },
        "website": {"type": "string", "format": "uri"},
    },
}
SEARCH_OUTPUT = {
    "type": "object",
    "required": ["results", "total"],
    "properties": {
        "results": {"type": "array", "maxItems": 5, "items": {"$ref": "#/$defs/hit"}},
        "total": {"type": "integer", "minimum": 0},
        "nextCursor": {"type": ["string", "null"]},
    },
    "$defs": {
        "hit": {
            "type": "object",
            "required": ["id", "title", "score"],
            "properties": {
                "id": {"type": "string", "pattern": "^doc_[0-9a-f]{8}$"},
                "title": {"type": "string"},
                "url": {"type": "string", "format": "uri"},
                "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            },
        }
    },
}
ORDER = {
    "type": "object",
    "required": ["orderId", "customer", "lines", "total", "currency", "status"],
    "properties": {
        "orderId": {"type": "string"},
        "customer": {
            "type": "object",
            "required": ["name", "email"],
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
                "phone": {"type": "string"},
            },
        },
        "lines": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "required": ["sku", "quantity", "price"],
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "price": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                },
            },
        },
        "total": {"type": "number", "minimum": 0},
        "currency": {"enum": ["USD", "EUR", "GBP"]},
        "status": {"oneOf": [{"const": "pending"}, {"const": "paid"}, {"const": "shipped"}]},
        "placedAt": {"type": "string", "format": "date-time"},
    },
}

TOOLS: dict[str, dict[str, Any]] = {
    "text only (no outputSchema)": {"name": "search_contacts", "inputSchema": SEARCH_INPUT},
    "contact (10 properties)": {
        "name": "get_contact",
        "inputSchema": SEARCH_INPUT,
        "outputSchema": CONTACT,
    },
    "search results ($ref, array)": {
        "name": "search_docs",
        "inputSchema": SEARCH_INPUT,
        "outputSchema": SEARCH_OUTPUT,
    },
    "order (nested, oneOf, multipleOf)": {
        "name": "get_order",
        "inputSchema": SEARCH_INPUT,
        "outputSchema": ORDER,
    },
}


def _per_call_us(fn: Any, count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        fn(index)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    options = parser.parse_args()
    n = 200 if options.quick else 2000
    n_cold = 20 if options.quick else 100
    print(f"{'schema':38} {'cold us':>10} {'uncached us':>12} {'warm us':>9}")
    for label, tool in TOOLS.items():

        def cold(index: int, tool: dict[str, Any] = tool) -> None:
            fresh = copy.deepcopy(tool)  # a schema nobody has compiled yet
            fresh["inputSchema"]["description"] = f"cold {index} {time.perf_counter()}"
            Simulator().simulate(fresh, {"query": "acme"}, tenant="t", integration="crm")

        simulator = Simulator(result_cache_size=100_000)

        def uncached(
            index: int, tool: dict[str, Any] = tool, simulator: Simulator = simulator
        ) -> None:
            simulator.simulate(
                tool, {"query": f"acme {index}", "limit": 10}, tenant="t", integration="crm"
            )

        def warm(index: int, tool: dict[str, Any] = tool, simulator: Simulator = simulator) -> None:
            simulator.simulate(
                tool, {"query": "acme 1", "limit": 10}, tenant="t", integration="crm"
            )

        cold(-1)
        uncached(-1)
        cold_us = _per_call_us(cold, n_cold)
        uncached_us = _per_call_us(uncached, n)
        warm_us = _per_call_us(warm, n)
        print(f"{label:38} {cold_us:10.0f} {uncached_us:12.0f} {warm_us:9.1f}")


if __name__ == "__main__":
    main()
