"""Datasets gated from manifests, models registered on them, a subject's impact and report."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["lineage"])
