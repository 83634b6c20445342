"""Host tools for the approval tests: one that needs a human's yes, one that does not."""

from __future__ import annotations

from codeact_kernel import tool

RECORDS = {"a": 1, "b": 2, "c": 3}
DELETED: list[str] = []


@tool(requires_approval=True)
def delete_record(key: str) -> int:
    """Delete a record for good and return how many are left.

    Args:
        key: The record to delete.
    """
    RECORDS.pop(key, None)
    DELETED.append(key)
    return len(RECORDS)


@tool
def count_records() -> int:
    """How many records there are."""
    return len(RECORDS)
