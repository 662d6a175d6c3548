/**
 * The new-task form. Input is checked with the API's own zod schema before it
 * is sent; the server's 400 VALIDATION_ERROR is mapped back onto the field it
 * names. Each error sits next to its field and is tied to it with
 * aria-describedby.
 */
import { CreateTaskBodySchema, type TaskDto } from "@repo/types";
import { type FormEvent, type ReactNode, useId, useState } from "react";
import { api, errorText } from "../api";
import { ApiError, fieldErrorsFrom } from "../api/client";

const FIELDS = ["repoUrl", "baseBranch", "title", "message"] as const;
type Field = (typeof FIELDS)[number];
type Values = Record<Field, string>;

const EMPTY: Values = { repoUrl: "", baseBranch: "", title: "", message: "" };

export function validateNewTask(values: Values) {
  const body = {
    repoUrl: values.repoUrl,
    message: values.message,
    ...(values.baseBranch.trim() ? { baseBranch: values.baseBranch } : {}),
    ...(values.title.trim() ? { title: values.title } : {}),
  };
  const parsed = CreateTaskBodySchema.safeParse(body);
  if (parsed.success) return { body: parsed.data, errors: {} as Partial<Record<Field, string>> };
  const errors: Partial<Record<Field, string>> = {};
  for (const issue of parsed.error.issues) {
    const field = issue.path[0];
    if (typeof field === "string" && (FIELDS as readonly string[]).includes(field)) {
      errors[field as Field] ??= issue.message;
    }
  }
  return { body: null, errors };
}

export function NewTaskForm({ onCreated }: { onCreated: (task: TaskDto) => void }) {
  const [values, setValues] = useState<Values>(EMPTY);
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [general, setGeneral] = useState<string | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const id = useId();

  const set = (field: Field) => (event: { target: { value: string } }) => {
    setValues((v) => ({ ...v, [field]: event.target.value }));
    if (errors[field]) setErrors((e) => ({ ...e, [field]: undefined }));
  };

  const submit = async () => {
    const { body, errors: clientErrors } = validateNewTask(values);
    setGeneral(null);
    if (!body) {
      setErrors(clientErrors);
      document.getElementById(`${id}-${FIELDS.find((f) => clientErrors[f])}`)?.focus();
      return;
    }
    setSubmitting(true);
    try {
      const task = await api.createTask(body);
      setValues(EMPTY);
      setErrors({});
      onCreated(task);
    } catch (error) {
      if (error instanceof ApiError) {
        const mapped = fieldErrorsFrom(error, FIELDS);
        setErrors(mapped.fields);
        setGeneral(mapped.general);
      } else {
        setGeneral(errorText(error));
      }
    } finally {
      setSubmitting(false);
    }
  };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    void submit();
  };

  const field = (name: Field, label: string, input: (props: Record<string, unknown>) => ReactNode, hint?: string) => {
    const error = errors[name];
    const describedBy = [error ? `${id}-${name}-error` : null, hint ? `${id}-${name}-hint` : null]
      .filter(Boolean)
      .join(" ");
    return (
      <div className={`field field--${name}`}>
        <label htmlFor={`${id}-${name}`}>{label}</label>
        {input({
          id: `${id}-${name}`,
          name,
          value: values[name],
          onChange: set(name),
          "aria-invalid": error ? true : undefined,
          "aria-describedby": describedBy || undefined,
        })}
        {hint && (
          <p id={`${id}-${name}-hint`} className="hint">
            {hint}
          </p>
        )}
        {error && (
          <p id={`${id}-${name}-error`} className="field-error" data-field={name}>
            {error}
          </p>
        )}
      </div>
    );
  };

  return (
    <form className="card new-task" onSubmit={onSubmit} noValidate aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>New task</h2>
      <div className="field-row">
        {field(
          "repoUrl",
          "Repository",
          (p) => (
            <input type="text" autoComplete="off" spellCheck={false} placeholder="/path/to/repo or https://…" {...p} />
          ),
          "Absolute path of a local git repository, or a git URL.",
        )}
        {field("baseBranch", "Base branch (optional)", (p) => (
          <input type="text" autoComplete="off" spellCheck={false} placeholder="default branch" {...p} />
        ))}
      </div>
      {field("title", "Title (optional)", (p) => (
        <input type="text" placeholder="from the message" {...p} />
      ))}
      {field("message", "Message", (p) => (
        <textarea
          rows={4}
          placeholder="What should the agent do?"
          onKeyDown={(event) => {
            if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
              event.preventDefault();
              void submit();
            }
          }}
          {...p}
        />
      ))}
      <div className="form-footer">
        {general && (
          <p className="field-error" role="alert">
            {general}
          </p>
        )}
        <button type="submit" className="button button--primary" disabled={submitting}>
          {submitting ? "Creating…" : "Create task"}
        </button>
      </div>
    </form>
  );
}
