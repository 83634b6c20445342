"""A university registry: student ids, transcripts, course catalogue, paged class lists."""

from __future__ import annotations

from typing import Any

from .common import Number, Text, UnseenTask, paginate

_STUDENTS = {
    "S-1042": "Maria Lopez", "S-1043": "Kwame Mensah", "S-1057": "Yuki Tanaka",
    "S-1061": "Ella Novak", "S-1078": "Tomas Berg", "S-1080": "Aisha Rahman",
    "S-1093": "Leo Marsh",
}
_COURSES = {
    "CS210": ("Data Structures", 6, "Computer Science"),
    "CS230": ("Databases", 5, "Computer Science"),
    "MA101": ("Calculus I", 8, "Mathematics"),
    "MA150": ("Linear Algebra", 6, "Mathematics"),
    "MA220": ("Probability", 5, "Mathematics"),
    "PH110": ("Mechanics", 7, "Physics"),
}
# student -> {course: score out of 100}
_SCORES = {
    "S-1042": {"CS210": 88, "MA101": 72, "MA150": 91, "PH110": 65},
    "S-1043": {"CS210": 79, "CS230": 84, "MA101": 58},
    "S-1057": {"CS210": 93, "MA150": 77, "MA220": 85},
    "S-1061": {"CS210": 81, "PH110": 70},
    "S-1078": {"CS210": 64, "CS230": 90, "MA220": 73},
    "S-1080": {"CS210": 85, "MA101": 94},
    "S-1093": {"CS230": 76, "MA150": 68},
}


def find_student(name: str) -> str:
    """The student id of a student, e.g. "Leo Marsh" -> "S-1093".

    Args:
        name: The student's full name.
    """
    for sid, full in _STUDENTS.items():
        if full.lower() == name.strip().lower():
            return sid
    raise KeyError(f"no student named {name!r}")


def transcript(student_id: str) -> list[dict[str, Any]]:
    """The courses a student has completed, with their scores.

    Args:
        student_id: The student's id, e.g. "S-1093" (not the name).

    Returns:
        A list of {"course" (course code), "score" (0 to 100)}.
    """
    key = student_id.strip().upper()
    if key not in _STUDENTS:
        raise ValueError(f"unknown student id {student_id!r}: ids look like 'S-1093'; call "
                         "find_student(name) first")
    return [{"course": c, "score": s} for c, s in _SCORES[key].items()]


def course_info(code: str) -> dict[str, Any]:
    """A course of the catalogue.

    Args:
        code: The course code, e.g. "MA220".

    Returns:
        {"code", "title", "credits", "department"}.
    """
    key = code.strip().upper()
    if key not in _COURSES:
        raise KeyError(f"no course with code {code!r}")
    title, credits, department = _COURSES[key]
    return {"code": key, "title": title, "credits": credits, "department": department}


def department_courses(department: str) -> list[str]:
    """The codes of the courses a department teaches.

    Args:
        department: The department's name, e.g. "Physics".
    """
    return [c for c, v in _COURSES.items() if v[2].lower() == department.strip().lower()]


def class_list(code: str, page_token: str = "") -> dict[str, Any]:
    """One page of the students who completed a course (3 per page).

    Args:
        code: The course code, e.g. "MA220".
        page_token: '' for the first page, then the previous page's "next_page".

    Returns:
        {"students": [{"student_id", "name"}, ...],
         "next_page": a token for the next page, or None on the last page}.
    """
    key = code.strip().upper()
    if key not in _COURSES:
        raise KeyError(f"no course with code {code!r}")
    rows = [{"student_id": s, "name": _STUDENTS[s]} for s in _STUDENTS if key in _SCORES[s]]
    return paginate(rows, page_token, 3, key, "students")


_MARIA = _SCORES["S-1042"]
_MATH = [c for c, v in _COURSES.items() if v[2] == "Mathematics"]
_BIGGEST_MATH = max(_MATH, key=lambda c: _COURSES[c][1])
_WEIGHTED = sum(s * _COURSES[c][1] for c, s in _MARIA.items()) / sum(
    _COURSES[c][1] for c in _MARIA)
_CS210_OVER_80 = sum(1 for s in _SCORES.values() if s.get("CS210", 0) > 80)

TASKS = (
    UnseenTask(
        "course_credits_total", "courses", "easy", ("list-vs-lookup", "compute"),
        "How many credits do the courses CS210 and PH110 give together?",
        (department_courses, course_info), (course_info,),
        Number(_COURSES["CS210"][1] + _COURSES["PH110"][1], 0),
        "final_answer(course_info('CS210')['credits'] + course_info('PH110')['credits'])",
    ),
    UnseenTask(
        "student_course_count", "courses", "easy", ("lookup", "compute"),
        "How many courses has the student with id S-1057 completed?",
        (transcript,), (transcript,),
        Number(len(_SCORES["S-1057"]), 0),
        "final_answer(len(transcript('S-1057')))",
    ),
    UnseenTask(
        "maria_average", "courses", "medium", ("tool-advice", "compute"),
        "What is Maria Lopez's average score over her completed courses? Round to 1 decimal.",
        (find_student, transcript), (find_student, transcript),
        Number(round(sum(_MARIA.values()) / len(_MARIA), 1), 0.051),
        "t = transcript(find_student('Maria Lopez'))\n"
        "final_answer(round(sum(r['score'] for r in t) / len(t), 1))",
    ),
    UnseenTask(
        "biggest_math_course", "courses", "medium", ("conditional", "compute"),
        "Which Mathematics course gives the most credits? Answer with its title.",
        (department_courses, course_info), (department_courses, course_info),
        Text(_COURSES[_BIGGEST_MATH][0], tuple(_COURSES[c][0] for c in _MATH
                                               if c != _BIGGEST_MATH)),
        "info = [course_info(c) for c in department_courses('Mathematics')]\n"
        "final_answer(max(info, key=lambda c: c['credits'])['title'])",
    ),
    UnseenTask(
        "maria_weighted", "courses", "hard", ("chain", "tool-advice", "compute"),
        "What is Maria Lopez's credit-weighted average score (each course's score weighted by "
        "its credits)? Round to 2 decimals.",
        (find_student, transcript, course_info), (find_student, transcript, course_info),
        Number(round(_WEIGHTED, 2), 0.011),
        "t = transcript(find_student('Maria Lopez'))\n"
        "w = {r['course']: course_info(r['course'])['credits'] for r in t}\n"
        "final_answer(round(sum(r['score'] * w[r['course']] for r in t) / sum(w.values()), 2))",
    ),
    UnseenTask(
        "cs210_over_80", "courses", "hard", ("pagination", "chain", "conditional"),
        "How many of the students who completed CS210 scored more than 80 in it?",
        (class_list, transcript), (class_list, transcript),
        Number(_CS210_OVER_80, 0),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = class_list('CS210', tok)\n"
        "    rows += p['students']\n    tok = p['next_page']\nn = 0\nfor s in rows:\n"
        "    score = [r['score'] for r in transcript(s['student_id']) if r['course'] == 'CS210']\n"
        "    n += score[0] > 80\nfinal_answer(n)",
    ),
)
