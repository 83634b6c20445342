"""A git-like history: a paged log per branch, commit details, branches."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .common import Number, Text, UnseenTask, paginate

# (sha, branch, author, date, message, files, insertions, deletions), newest first per branch
_ROWS = [
    ("9c41e07", "main", "Omar", "2024-04-19", "Fix rounding in invoice totals",
     ["billing/invoice.py", "tests/test_invoice.py"], 14, 6),
    ("5b2d9aa", "main", "Priya", "2024-04-18", "Add CSV export",
     ["export/csv.py", "export/__init__.py", "tests/test_export.py"], 120, 3),
    ("e07f113", "main", "Priya", "2024-04-16", "Bump parser version", ["pyproject.toml"], 1, 1),
    ("3f2a9c1", "main", "Lena", "2024-04-15", "Speed up the report query",
     ["reports/query.py", "billing/invoice.py"], 38, 52),
    ("a8813de", "main", "Omar", "2024-04-12", "Document the export options",
     ["docs/export.md"], 64, 0),
    ("71c0d5f", "main", "Omar", "2024-04-11", "Handle empty invoices",
     ["billing/invoice.py", "tests/test_invoice.py"], 22, 2),
    ("c3e9b20", "main", "Lena", "2024-04-09", "Add report caching",
     ["reports/cache.py", "reports/query.py"], 88, 10),
    ("0d6f4b8", "main", "Omar", "2024-04-05", "Initial billing module",
     ["billing/invoice.py", "billing/__init__.py"], 210, 0),
    ("f1a2b3c", "main", "Priya", "2024-04-03", "Project skeleton",
     ["pyproject.toml", "README.md"], 45, 0),
    ("d4e5f60", "main", "Lena", "2024-04-02", "Initial commit", ["README.md"], 3, 0),
    ("b7a6e55", "feature/search", "Priya", "2024-04-20", "Search: rank by date",
     ["search/rank.py"], 31, 12),
    ("2e8c0f9", "feature/search", "Jonas", "2024-04-17", "Search: tokenizer",
     ["search/tokenize.py", "tests/test_tokenize.py"], 95, 0),
    ("66d1a7b", "feature/search", "Priya", "2024-04-14", "Search: index skeleton",
     ["search/index.py"], 57, 0),
]
_KEYS = ("sha", "branch", "author", "date", "message", "files", "insertions", "deletions")
_COMMITS: dict[str, dict[str, Any]] = {r[0]: dict(zip(_KEYS, r, strict=True)) for r in _ROWS}
_BRANCHES = ("main", "feature/search")


def branches() -> list[str]:
    """The names of the repository's branches."""
    return list(_BRANCHES)


def git_log(branch: str, page_token: str = "") -> dict[str, Any]:
    """One page of a branch's history, newest commit first (4 commits per page).

    Args:
        branch: The branch name, e.g. "main".
        page_token: '' for the first page, then the previous page's "next_page".

    Returns:
        {"commits": [{"sha", "author", "date" ("YYYY-MM-DD"), "message"}, ...],
         "next_page": a token for the next page, or None on the last page}.
    """
    if branch not in _BRANCHES:
        raise ValueError(f"unknown branch {branch!r}; the branches are {', '.join(_BRANCHES)}")
    rows = [{k: c[k] for k in ("sha", "author", "date", "message")}
            for c in _COMMITS.values() if c["branch"] == branch]
    return paginate(rows, page_token, 4, branch.replace("/", "_"), "commits")


def show_commit(sha: str) -> dict[str, Any]:
    """Details of one commit.

    Args:
        sha: The commit's 7-character sha, as git_log returns it.

    Returns:
        {"sha", "author", "date", "message", "files" (paths changed), "insertions",
         "deletions"}.
    """
    key = sha.strip().lower()[:7]
    if key not in _COMMITS:
        raise ValueError(f"unknown commit {sha!r}: use a sha from git_log(branch)")
    return {k: v for k, v in _COMMITS[key].items() if k != "branch"}


def _on(branch: str) -> list[dict[str, Any]]:
    return [c for c in _COMMITS.values() if c["branch"] == branch]


_MAIN = _on("main")
_TOP_AUTHOR = Counter(c["author"] for c in _MAIN).most_common(1)[0][0]
_FILES_LAST4 = Counter(f for c in _MAIN[:4] for f in c["files"]).most_common(1)[0][0]

TASKS = (
    UnseenTask(
        "commit_lines_changed", "commits", "easy", ("lookup", "compute"),
        "How many lines did commit 3f2a9c1 change in total (insertions plus deletions)?",
        (git_log, show_commit), (show_commit,),
        Number(_COMMITS["3f2a9c1"]["insertions"] + _COMMITS["3f2a9c1"]["deletions"], 0),
        "c = show_commit('3f2a9c1')\nfinal_answer(c['insertions'] + c['deletions'])",
    ),
    UnseenTask(
        "latest_search_commit", "commits", "easy", ("lookup",),
        "Who wrote the most recent commit on the feature/search branch?",
        (branches, git_log), (git_log,),
        Text(_on("feature/search")[0]["author"], ("Jonas",)),
        "final_answer(git_log('feature/search')['commits'][0]['author'])",
    ),
    UnseenTask(
        "search_branch_priya", "commits", "medium", ("conditional", "compute"),
        "How many commits on the feature/search branch did Priya write?",
        (branches, git_log), (git_log,),
        Number(sum(c["author"] == "Priya" for c in _on("feature/search")), 0),
        "p = git_log('feature/search')\n"
        "final_answer(sum(1 for c in p['commits'] if c['author'] == 'Priya'))",
    ),
    UnseenTask(
        "hot_file_recent", "commits", "medium", ("chain", "compute"),
        "Among the 4 most recent commits on main, which file was changed by the most commits? "
        "Answer with its path.",
        (git_log, show_commit), (git_log, show_commit),
        Text(_FILES_LAST4, ("pyproject.toml", "reports/query.py", "export/csv.py")),
        "from collections import Counter\nshas = [c['sha'] for c in git_log('main')['commits']]\n"
        "n = Counter(f for s in shas for f in show_commit(s)['files'])\n"
        "final_answer(n.most_common(1)[0][0])",
    ),
    UnseenTask(
        "main_top_author", "commits", "hard", ("pagination", "compute"),
        "Who made the most commits on the main branch, over its whole history? Answer with "
        "the author's name.",
        (branches, git_log), (git_log,),
        Text(_TOP_AUTHOR, tuple({c["author"] for c in _MAIN} - {_TOP_AUTHOR})),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = git_log('main', tok)\n"
        "    rows += p['commits']\n    tok = p['next_page']\n"
        "from collections import Counter\n"
        "final_answer(Counter(c['author'] for c in rows).most_common(1)[0][0])",
    ),
    UnseenTask(
        "omar_insertions", "commits", "hard", ("pagination", "chain", "conditional"),
        "How many lines in total did Omar insert on the main branch, over its whole history?",
        (git_log, show_commit), (git_log, show_commit),
        Number(sum(c["insertions"] for c in _MAIN if c["author"] == "Omar"), 0),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = git_log('main', tok)\n"
        "    rows += p['commits']\n    tok = p['next_page']\n"
        "final_answer(sum(show_commit(c['sha'])['insertions'] for c in rows\n"
        "                 if c['author'] == 'Omar'))",
    ),
)
