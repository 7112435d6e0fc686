"""A page form's inputs as HTML, written in Python instead of through Django's widget templates.

Why: `{{ field }}` renders two templates per choice widget (radio.html, multiple_input.html)
and four more per choice (radio_option.html, input_option.html, input.html, attrs.html), and
`{{ field.errors }}` two per field even when there are none: 233 template renders for a page
of the demo survey, most of a page GET's CPU time in the app (README.md has the figures). This
module writes the same markup with string formatting.

What it writes is byte for byte what Django 5.2 writes for PageForm's widgets (RadioSelect,
CheckboxSelectMultiple, Textarea, HiddenInput): the markup of Django's templates
django/forms/widgets/{multiple_input,input_option,input,attrs,textarea}.html and
django/forms/errors/list/ul.html, stripped as Django's form renderer strips it, with the
attributes Django's own BoundField computes (`required`, `aria-invalid`, `aria-describedby`,
the id) and the values the widgets would show (`format_value`). tests/test_rendering.py renders
pages both ways, for every question kind and state, and compares them byte for byte, so a
Django upgrade that changes its widgets' markup fails there first.

Escaping is the template engine's, `conditional_escape`: remembered for the text that comes
from the code and the survey's definition, done afresh for what the taker sent or saved.
"""

import functools

from django.forms import HiddenInput, RadioSelect, Textarea
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString


def page_fields_html(form):
    """The hidden `submission_id` input and its errors, then a fieldset for each question.

    The whitespace between the pieces is what page.html had around them when it rendered each
    `{{ field }}` in a template loop, so the page's source is unchanged too.
    """
    return _fill(_parts(form), lambda name, field: form[name].value())


class PageSkeleton:
    """A page's inputs as an unbound form without errors renders them, with a slot for each
    value: built once per page, then filled with each taker's saved answers.

    On a GET (no data, no errors) nothing but the values changes from one taker to the next:
    the attributes Django computes depend on the question, its help text and errors, not on
    the value (RadioSelect and Textarea always ask for `required` on a required question,
    CheckboxSelectMultiple never does). Filling the slots gives what page_fields_html() gives
    for PageForm(page, initial=...), which tests/test_rendering.py checks byte for byte.
    """

    def __init__(self, form):
        if form.is_bound or form.initial:
            raise ValueError("a skeleton is made from an unbound form without initial values")
        self._parts = _parts(form)

    def fill(self, initial):
        """The inputs showing `initial` ({field name: value}, as PageForm's initial)."""
        return _fill(
            self._parts, lambda name, field: field.prepare_value(initial.get(name, field.initial))
        )


def _parts(form):
    """The inputs' HTML as strings and (name, field, write) slots, write(value) being a value's
    HTML. The value is BoundField.value()'s."""
    hidden = form["submission_id"]
    parts = [_widget_slot(hidden), "\n  ", _errors_html(hidden.errors), "\n  "]
    for field in form.visible_fields():
        parts.extend(_fieldset(field))
    return parts


def _fill(parts, value):
    """Join `parts`, each slot written with value(name, field)."""
    return SafeString(
        "".join(
            part if isinstance(part, str) else part[2](value(part[0], part[1])) for part in parts
        )
    )


def _fieldset(field):
    """One question: legend (with the required marker), help text, errors, inputs."""
    errors = field.errors
    invalid = " invalid" if errors else ""
    required = ' <span class="required">*</span>' if field.field.required else ""
    help_text = field.help_text
    help_html = f'<p class="help">{_escape_known(help_text)}</p>' if help_text else ""
    return (
        f'\n  <fieldset class="question{invalid}">'
        f"\n    <legend>{_escape_known(field.label)}{required}</legend>"
        f"\n    {help_html}"
        f"\n    {_errors_html(errors)}"
        "\n    ",
        _widget_slot(field),
        "\n  </fieldset>\n  ",
    )


def _errors_html(errors):
    """A field's ErrorList as `{{ field.errors }}` renders it: a <ul> if there are errors."""
    if not errors:
        return ""
    id_html = f' id="{conditional_escape(errors.field_id)}_error"' if errors.field_id else ""
    items = "".join(f"<li>{conditional_escape(message)}</li>" for message in errors)
    return f'<ul class="{conditional_escape(errors.error_class)}"{id_html}>{items}</ul>'


def _widget_slot(field):
    """A bound field's widget as `{{ field }}` (BoundField.as_widget) renders it, as a slot:
    (name, field, write), write(value) giving the HTML for BoundField.value() `value`."""
    widget = field.field.widget
    # The attributes as_widget hands to widget.render(), which lays them over the widget's own
    # (Widget.build_attrs) and shows the value through format_value().
    attrs = field.build_widget_attrs({}, widget)
    if field.auto_id and "id" not in widget.attrs:
        attrs.setdefault("id", field.auto_id)
    attrs = {**widget.attrs, **attrs}
    name = _escape_known(field.html_name)
    if isinstance(widget, RadioSelect):  # CheckboxSelectMultiple too: it is a RadioSelect
        write = _choices_writer(widget, name, attrs)
    # The values below are what the taker sent or saved: escaped afresh, never remembered.
    elif isinstance(widget, Textarea):
        start = f'<textarea name="{name}"{_attrs_html(attrs)}>\n'

        def write(value):
            text = widget.format_value(value)  # None for "" and None
            return f"{start}{conditional_escape(text) if text else ''}</textarea>"

    elif isinstance(widget, HiddenInput):
        attrs_html = _attrs_html(attrs)

        def write(value):
            value = widget.format_value(value)
            value_html = "" if value is None else f' value="{conditional_escape(value)}"'
            return f'<input type="hidden" name="{name}"{value_html}{attrs_html}>'

    else:
        # A new kind of question needs its markup here, and its cases in tests/test_rendering.py.
        raise TypeError(f"no HTML for a {type(widget).__name__}")
    return (field.name, field.field, write)


def _choices_writer(widget, name, attrs):
    """RadioSelect / CheckboxSelectMultiple: a <div> of labelled inputs, one per choice.

    Each option's HTML is made here, once, in two halves around where ` checked` goes. The
    writer's value is format_value()'s list of strings; as in ChoiceWidget.optgroups(), a radio
    button is checked only for the first choice that matches. Choices are flat (no groups):
    PageForm builds them from a question's choices or the 1-5 scale.
    """
    # Each option has the field's attributes, its own id (the field's + "_" + its index) in
    # the id's place and `checked` after them all (ChoiceWidget.create_option). What comes
    # before and after the id is the same for every option, so it is written once here.
    field_id = attrs.get("id")
    if field_id:
        keys = list(attrs)
        at = keys.index("id")
        before = _attrs_html({key: attrs[key] for key in keys[:at]})
        after = _attrs_html({key: attrs[key] for key in keys[at + 1 :]})
        id_base = _escape_known(field_id)  # + "_" + a number: nothing more to escape
    else:  # no id, or an empty one, which ChoiceWidget.id_for_label() leaves as it is
        before, after = _attrs_html(attrs), ""
    start = f'<input type="{widget.input_type}" name="{name}" value="'
    options = []  # (the value as format_value() shows it, HTML before ` checked`, after it)
    for index, (choice_value, label) in enumerate(widget.choices):
        if choice_value is None:
            choice_value = ""
        if field_id:
            label_tag, id_html = f'<label for="{id_base}_{index}">', f' id="{id_base}_{index}"'
        else:
            label_tag, id_html = "<label>", ""
        # The newlines are the ones Django's option templates leave: each file ends in one.
        options.append(
            (
                str(choice_value),
                f'<div>\n    {label_tag}{start}{_escape_known(choice_value)}"'
                f"{before}{id_html}{after}",
                f">\n {_escape_known(label)}</label>\n\n</div>",
            )
        )
    id_html = f' id="{id_base}"' if field_id else ""
    css = attrs.get("class")
    class_html = f' class="{_escape_known(css)}"' if css else ""
    opening, closing = f"<div{id_html}{class_html}>", "\n</div>"
    multiple = widget.allow_multiple_selected

    def write(value):
        selected = widget.format_value(value)
        html = [opening]
        has_selected = False
        for shown, head, tail in options:
            checked = (not has_selected or multiple) and shown in selected
            has_selected |= checked
            html.append(f"{head} checked{tail}" if checked else f"{head}{tail}")
        html.append(closing)
        return "".join(html)

    return write


def _attrs_html(attrs):
    """django/forms/widgets/attrs.html: ` name="value"`, ` name` for True, nothing for False."""
    return "".join(
        f" {_escape_known(key)}"
        if value is True
        else f' {_escape_known(key)}="{_escape_known(value)}"'
        for key, value in attrs.items()
        if value is not False
    )


@functools.lru_cache(maxsize=8192, typed=True)
def _escape_known(text):
    """conditional_escape(), remembered, for text from the code and the survey's definition.

    Every GET of a page escapes the same labels, names, ids and choice values again, and
    conditional_escape() is several Python calls where a remembered answer is one lookup.
    Not for what takers send: that varies without end and would only churn the cache.
    typed=True keeps a SafeString (not escaped) apart from an equal plain string (escaped).
    """
    return conditional_escape(text)
