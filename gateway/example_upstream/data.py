"""The example CRM's sample data. Read-only: each `Crm` works on its own copy."""

from __future__ import annotations

from typing import Any

__all__ = ["CONTACTS", "DEALS", "NOTES"]

CONTACTS: list[dict[str, str]] = [
    {
        "id": "c_001",
        "name": "Ada Lovelace",
        "email": "ada@analytical-engines.example",
        "company": "Analytical Engines Ltd",
        "title": "Head of Research",
        "phone": "+44 20 7946 0001",
    },
    {
        "id": "c_002",
        "name": "Grace Hopper",
        "email": "grace@compiler.example",
        "company": "Compiler Corp",
        "title": "CTO",
        "phone": "+1 202 555 0102",
    },
    {
        "id": "c_003",
        "name": "Alan Turing",
        "email": "alan@bletchley.example",
        "company": "Bletchley Systems",
        "title": "Principal Engineer",
        "phone": "+44 20 7946 0003",
    },
    {
        "id": "c_004",
        "name": "Katherine Johnson",
        "email": "katherine@orbital.example",
        "company": "Orbital Dynamics",
        "title": "VP Engineering",
        "phone": "+1 757 555 0104",
    },
    {
        "id": "c_005",
        "name": "Hedy Lamarr",
        "email": "hedy@spread-spectrum.example",
        "company": "Spread Spectrum Inc",
        "title": "Founder",
        "phone": "+1 310 555 0105",
    },
    {
        "id": "c_006",
        "name": "Edsger Dijkstra",
        "email": "edsger@shortest-path.example",
        "company": "Shortest Path BV",
        "title": "Chief Architect",
        "phone": "+31 20 555 0106",
    },
    {
        "id": "c_007",
        "name": "Margaret Hamilton",
        "email": "margaret@apollo-software.example",
        "company": "Apollo Software",
        "title": "Director of Software",
        "phone": "+1 617 555 0107",
    },
    {
        "id": "c_008",
        "name": "Adam Smith",
        "email": "adam@orbital.example",
        "company": "Orbital Dynamics",
        "title": "Procurement Lead",
        "phone": "+1 757 555 0108",
    },
]
DEALS: list[dict[str, Any]] = [
    {
        "id": "d_101",
        "name": "Analytical Engines: research cluster",
        "contactId": "c_001",
        "stage": "proposal",
        "amount": 48000,
        "currency": "GBP",
        "expectedCloseDate": "2026-03-31",
    },
    {
        "id": "d_102",
        "name": "Compiler Corp: platform licence",
        "contactId": "c_002",
        "stage": "negotiation",
        "amount": 125000,
        "currency": "USD",
        "expectedCloseDate": "2026-02-15",
    },
    {
        "id": "d_103",
        "name": "Bletchley: security audit",
        "contactId": "c_003",
        "stage": "closed_won",
        "amount": 32000,
        "currency": "GBP",
        "expectedCloseDate": "2025-11-30",
    },
    {
        "id": "d_104",
        "name": "Orbital Dynamics: trajectory suite",
        "contactId": "c_004",
        "stage": "qualification",
        "amount": 210000,
        "currency": "USD",
        "expectedCloseDate": "2026-06-30",
    },
    {
        "id": "d_105",
        "name": "Orbital Dynamics: support renewal",
        "contactId": "c_008",
        "stage": "prospecting",
        "amount": 18500,
        "currency": "USD",
        "expectedCloseDate": "2026-04-15",
    },
    {
        "id": "d_106",
        "name": "Spread Spectrum: pilot",
        "contactId": "c_005",
        "stage": "closed_lost",
        "amount": 9000,
        "currency": "USD",
        "expectedCloseDate": "2025-10-01",
    },
    {
        "id": "d_107",
        "name": "Apollo Software: onboarding",
        "contactId": "c_007",
        "stage": "proposal",
        "amount": 56000,
        "currency": "USD",
        "expectedCloseDate": "2026-05-01",
    },
]
NOTES: list[dict[str, str]] = [
    {
        "id": "n_001",
        "contactId": "c_001",
        "body": "Intro call: interested in the research "
        "cluster, wants a proposal by end of quarter.",
        "createdAt": "2025-12-02T10:15:00Z",
    },
    {
        "id": "n_002",
        "contactId": "c_002",
        "body": "Legal is reviewing the licence terms.",
        "createdAt": "2026-01-12T16:40:00Z",
    },
]
