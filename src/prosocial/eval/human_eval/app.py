"""The rater web page: one task per page, keyboard first, every shown text HTML-escaped.

Raters open ``/``, give a name, and get tasks one by one (``/task?rater=NAME``); each page shows the
conversation, the two replies as "Response 1" (left) and "Response 2" (right) with no hint of their systems,
and the paper's five questions. Keys 1 / 2 / 3 answer the current question (left / tie / right) and move to
the next, Backspace goes back, Enter submits once all five are answered; mouse and Tab work as usual.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from prosocial.eval.human_eval.store import Store
from prosocial.eval.human_eval.tasks import CHOICES, DIMENSIONS, Task

STYLE = """
body{font-family:system-ui,sans-serif;max-width:62rem;margin:1.5rem auto;padding:0 1rem;line-height:1.4}
.turn{margin:.3rem 0}.who{font-weight:600;margin-right:.4rem}
.replies{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin:1rem 0}
.reply{border:1px solid #888;border-radius:6px;padding:.7rem;white-space:pre-wrap}
fieldset{border:1px solid #ccc;border-radius:6px;margin:.5rem 0}fieldset.current{border:2px solid #1a5fb4}
label{margin-right:1.2rem}kbd{border:1px solid #999;border-radius:3px;padding:0 .3rem}
.error{color:#a00}
"""
CHOICE_TEXT = {"left": "Response 1", "tie": "Tie", "right": "Response 2"}
SCRIPT = """
const sets=[...document.querySelectorAll('fieldset.q')];let cur=0;
function show(i){cur=Math.max(0,Math.min(i,sets.length-1));
 sets.forEach((s,j)=>s.classList.toggle('current',j===cur));sets[cur].scrollIntoView({block:'nearest'});}
document.addEventListener('keydown',e=>{
 if(e.target.tagName==='INPUT'&&e.target.type==='text')return;
 const k={'1':0,'2':1,'3':2}[e.key];
 if(k!==undefined){sets[cur].querySelectorAll('input')[k].checked=true;show(cur+1);e.preventDefault();}
 else if(e.key==='Backspace'){show(cur-1);e.preventDefault();}
 else if(e.key==='Enter'){e.preventDefault();document.getElementById('judge').requestSubmit();}
});
sets.forEach((s,j)=>s.addEventListener('focusin',()=>show(j)));show(0);
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
                        f"<style>{STYLE}</style></head><body>{body}</body></html>", status_code=status)


def _task_page(task: Task, rater: str, done: int, total: int) -> str:
    n = len(task.context)
    turns = "".join(f"<div class='turn'><span class='who'>Speaker {1 if (n - 1 - i) % 2 == 0 else 2}:</span>"
                    f"{escape(u)}</div>" for i, u in enumerate(task.context))
    left, right = task.shown
    questions = []
    for number, (key, question) in enumerate(DIMENSIONS.items(), 1):
        options = "".join(
            f"<label><input type='radio' name='{key}' value='{c}' required> <kbd>{i}</kbd> {CHOICE_TEXT[c]}</label>"
            for i, c in enumerate(CHOICES, 1))
        questions.append(f"<fieldset class='q' id='q-{key}'><legend>{number}. {escape(question)}</legend>"
                         f"{options}</fieldset>")
    return (f"<p>Rater <b>{escape(rater)}</b> · {done} of {total} judgments in the study so far</p>"
            f"<h2>Conversation</h2>{turns}"
            f"<div class='replies'><div><h3>Response 1</h3><div class='reply' id='left'>{escape(left)}</div></div>"
            f"<div><h3>Response 2</h3><div class='reply' id='right'>{escape(right)}</div></div></div>"
            f"<form id='judge' method='post' action='/judge'>"
            f"<input type='hidden' name='item_id' value='{escape(task.item_id)}'>"
            f"<input type='hidden' name='rater' value='{escape(rater)}'>{''.join(questions)}"
            f"<p><button type='submit'>Submit</button> · keys: <kbd>1</kbd> Response 1, <kbd>2</kbd> tie, "
            f"<kbd>3</kbd> Response 2, <kbd>Backspace</kbd> previous question, <kbd>Enter</kbd> submit</p></form>"
            f"<script>{SCRIPT}</script>")


def create_app(db: str | Path) -> Starlette:
    """The rater app over one study file (see `Store`)."""
    store = Store(db)
    store.study()  # fail at start-up, not on the first rater, when the file is not a study

    async def home(request: Request) -> Response:
        done, total = store.progress()
        return _page("Which response is better?", (
            "<h1>Which response is better?</h1><p>You will see a conversation and two possible next replies. "
            "For each of five questions, choose the better reply or a tie.</p>"
            f"<p>{done} of {total} judgments collected.</p>"
            "<form method='get' action='/task'><label>Your rater name "
            "<input type='text' name='rater' required autofocus></label> <button type='submit'>Start</button></form>"))

    async def task(request: Request) -> Response:
        rater = request.query_params.get("rater", "").strip()
        if not rater:
            return RedirectResponse("/", status_code=303)
        current = store.next_task(rater)
        done, total = store.progress()
        if current is None:
            return _page("Done", f"<h1>Thank you, {escape(rater)}!</h1><p id='done'>No tasks are left for you.</p>")
        return _page("Rate a conversation", _task_page(current, rater, done, total))

    async def judge(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()}
        rater, item_id = form.get("rater", "").strip(), form.get("item_id", "")
        try:
            store.record(item_id, rater, {d: form.get(d, "") for d in DIMENSIONS})
        except ValueError as err:
            return _page("Not saved", f"<p class='error'>Not saved: {escape(str(err))}</p>"
                                      f"<p><a href='/task?{escape(urlencode({'rater': rater}))}'>Back</a></p>", 400)
        return RedirectResponse(f"/task?{urlencode({'rater': rater})}", status_code=303)

    return Starlette(routes=[Route("/", home), Route("/task", task), Route("/judge", judge, methods=["POST"])])
