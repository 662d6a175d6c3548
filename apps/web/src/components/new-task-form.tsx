/**
 * The new-task form (also the "retry as a new task" form, prefilled). Input
 * is checked with the API's own zod schema before it is sent and the
 * server's 400 is mapped back onto the field it names — both worded for a
 * person (friendly-errors.ts). The repository field offers recent
 * repositories; once it holds a valid repository, the base-branch field
 * offers that repository's branches (GET /api/repositories/branches) and a
 * branch it does not have is refused before the task is created. Agent and
 * model pickers appear when the server lists agents (GET /api/config); the
 * delivery choice when it names a default delivery, with pull requests
 * offered only when it has a forge to open them on. Until the configuration
 * has arrived both are shown disabled, so the form does not grow under a
 * pointer already on its way to the submit button.
 */
import { CreateTaskBodySchema, RepoUrlSchema } from "@repo/types";
import { type FormEvent, type ReactNode, useId, useMemo, useState } from "react";
import { api, errorText, useConfig } from "../api";
import { ApiError, type CreateTaskRequest, fieldErrorsFrom } from "../api/client";
import { useBranchesQuery } from "../api/queries";
import { type Config, configDeliveryMode, configForges, DELIVERY_MODES, type Task } from "../api/schemas";
import { DELIVERY_MODE_LABELS } from "../delivery";
import { type FormField, friendlyFieldError } from "../friendly-errors";
import { useDebounced } from "../hooks/use-debounced";
import { recentRepositories, rememberRepository, repoName } from "../repositories";

const FIELDS = [
  "repoUrl",
  "baseBranch",
  "title",
  "message",
  "agent",
  "model",
  "delivery",
] as const satisfies readonly FormField[];
type Field = (typeof FIELDS)[number];
export type NewTaskValues = Record<Field, string>;

const EMPTY: NewTaskValues = {
  repoUrl: "",
  baseBranch: "",
  title: "",
  message: "",
  agent: "",
  model: "",
  delivery: "",
};

/**
 * Checks the form with the API's schema; agent and model are sent only to a
 * server that lists agents, a delivery other than its default only to a server
 * that names one.
 */
export function validateNewTask(values: NewTaskValues, config: Pick<Config, "agents" | "delivery"> | null = null) {
  const body = {
    repoUrl: values.repoUrl,
    message: values.message,
    ...(values.baseBranch.trim() ? { baseBranch: values.baseBranch } : {}),
    ...(values.title.trim() ? { title: values.title } : {}),
  };
  const errors: Partial<Record<Field, string>> = {};
  const parsed = CreateTaskBodySchema.safeParse(body);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = issue.path[0];
      if (typeof field === "string" && (FIELDS as readonly string[]).includes(field)) {
        errors[field as Field] ??= friendlyFieldError(field as Field, issue.message);
      }
    }
    return { body: null, errors };
  }
  const request: CreateTaskRequest = { ...parsed.data };
  if (config?.agents) {
    if (values.agent) {
      const agent = config.agents.find((a) => a.kind === values.agent);
      if (agent && !agent.available) {
        return { body: null, errors: { agent: agent.reason ?? "This agent is not available on the server." } };
      }
      request.agent = values.agent;
    }
    if (values.model.trim()) request.model = values.model.trim();
  }
  const delivery = DELIVERY_MODES.find((mode) => mode === values.delivery);
  if (config?.delivery && delivery) {
    const forges = configForges(config as Config);
    if (delivery === "pull-request" && forges?.length === 0) {
      return { body: null, errors: { delivery: "This server has no GitHub or GitLab configured for pull requests." } };
    }
    request.delivery = delivery;
  }
  return { body: request, errors };
}

export interface NewTaskFormProps {
  onCreated: (task: Task) => void;
  /** Tasks whose repositories are offered as recent ones. */
  recentTasks?: readonly Task[];
  /** Prefilled values (a retry). */
  initial?: Partial<NewTaskValues>;
  heading?: string;
  submitLabel?: string;
  onCancel?: () => void;
}

function useBranchPicker(repoUrl: string) {
  const settled = useDebounced(repoUrl.trim(), 500);
  const valid = RepoUrlSchema.safeParse(settled).success ? settled : null;
  const query = useBranchesQuery(valid);
  return { repoUrl: valid, ...query };
}

export function NewTaskForm({
  onCreated,
  recentTasks = [],
  initial,
  heading,
  submitLabel,
  onCancel,
}: NewTaskFormProps) {
  const config = useConfig();
  const [values, setValues] = useState<NewTaskValues>({ ...EMPTY, ...initial });
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [general, setGeneral] = useState<string | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const id = useId();
  const recent = useMemo(() => recentRepositories(recentTasks), [recentTasks]);
  const branches = useBranchPicker(values.repoUrl);
  const branchList = branches.repoUrl === values.repoUrl.trim() ? branches.data : undefined;

  const set = (field: Field) => (event: { target: { value: string } }) => {
    setValues((v) => ({ ...v, [field]: event.target.value }));
    if (errors[field]) setErrors((e) => ({ ...e, [field]: undefined }));
  };

  const submit = async () => {
    const { body, errors: clientErrors } = validateNewTask(values, config);
    const branch = values.baseBranch.trim();
    if (body && branch && branchList && !branchList.branches.includes(branch)) {
      clientErrors.baseBranch = `This branch does not exist in ${repoName(values.repoUrl)}.`;
    }
    setGeneral(null);
    if (!body || Object.keys(clientErrors).length > 0) {
      setErrors(clientErrors);
      document.getElementById(`${id}-${FIELDS.find((f) => clientErrors[f])}`)?.focus();
      return;
    }
    setSubmitting(true);
    try {
      const task = await api.createTask(body);
      rememberRepository(body.repoUrl);
      setValues({ ...EMPTY, ...initial });
      setErrors({});
      onCreated(task);
    } catch (error) {
      if (error instanceof ApiError) {
        const mapped = fieldErrorsFrom(error, FIELDS);
        const friendly: Partial<Record<Field, string>> = {};
        for (const field of FIELDS) {
          const message = mapped.fields[field];
          if (message) friendly[field] = friendlyFieldError(field, message);
        }
        setErrors(friendly);
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

  const field = (
    name: Field,
    label: string,
    input: (props: Record<string, unknown>) => ReactNode,
    hint?: ReactNode,
  ) => {
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

  const branchHint = !branches.repoUrl
    ? "The repository's default branch unless you pick one."
    : branches.isFetching && !branchList
      ? "Loading branches…"
      : branches.error
        ? `Branches unavailable: ${friendlyFieldError("repoUrl", errorText(branches.error))}`
        : branchList
          ? branchList.defaultBranch
            ? `Default: ${branchList.defaultBranch} · ${branchList.branches.length} branch${branchList.branches.length === 1 ? "" : "es"}`
            : "This repository has no commits yet."
          : undefined;

  const loading = config === null;
  const agents = config?.agents;
  const defaultDelivery = configDeliveryMode(config);
  const forges = configForges(config);
  return (
    <form className="card new-task" onSubmit={onSubmit} noValidate aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{heading ?? "New task"}</h2>
      <div className="field-row">
        {field(
          "repoUrl",
          "Repository",
          (p) => (
            <input
              type="text"
              autoComplete="off"
              spellCheck={false}
              placeholder="/path/to/repo or https://…"
              list={recent.length > 0 ? `${id}-recent` : undefined}
              {...p}
            />
          ),
          "Absolute path of a local git repository, or a git URL.",
        )}
        {field(
          "baseBranch",
          "Base branch (optional)",
          (p) => (
            <input
              type="text"
              autoComplete="off"
              spellCheck={false}
              placeholder={branchList?.defaultBranch ?? "default branch"}
              list={`${id}-branches`}
              {...p}
            />
          ),
          branchHint,
        )}
      </div>
      {recent.length > 0 && (
        <>
          <datalist id={`${id}-recent`}>
            {recent.map((repo) => (
              <option key={repo} value={repo} />
            ))}
          </datalist>
          <fieldset className="recent-repos">
            <legend className="muted">Recent repositories:</legend>
            {recent.slice(0, 4).map((repo) => (
              <button
                key={repo}
                type="button"
                className="chip"
                title={repo}
                aria-pressed={values.repoUrl === repo}
                onClick={() => set("repoUrl")({ target: { value: repo } })}
              >
                {repoName(repo)}
              </button>
            ))}
          </fieldset>
        </>
      )}
      <datalist id={`${id}-branches`}>
        {branchList?.branches.map((branch) => (
          <option key={branch} value={branch}>
            {branch === branchList.defaultBranch ? "default" : undefined}
          </option>
        ))}
      </datalist>
      {(loading || (agents && agents.length > 0)) && (
        <div className="field-row">
          {field("agent", "Agent", (p) => (
            <select disabled={loading} {...p}>
              <option value="">{loading ? "Loading…" : `Server default (${config?.agent})`}</option>
              {agents?.map((agent) => (
                <option key={agent.kind} value={agent.kind} disabled={!agent.available}>
                  {agent.available ? agent.kind : `${agent.kind} — ${agent.reason ?? "unavailable"}`}
                </option>
              ))}
            </select>
          ))}
          {field("model", "Model (optional)", (p) => (
            <input
              type="text"
              autoComplete="off"
              spellCheck={false}
              placeholder="the agent's default"
              disabled={loading}
              {...p}
            />
          ))}
        </div>
      )}
      {(loading || defaultDelivery) &&
        field(
          "delivery",
          "Delivery",
          (p) => (
            <select disabled={loading} {...p}>
              <option value="">
                {defaultDelivery
                  ? `Server default (${DELIVERY_MODE_LABELS[defaultDelivery].toLowerCase()})`
                  : "Loading…"}
              </option>
              {defaultDelivery &&
                DELIVERY_MODES.map((mode) => {
                  const unavailable = mode === "pull-request" && forges?.length === 0;
                  return (
                    <option key={mode} value={mode} disabled={unavailable}>
                      {DELIVERY_MODE_LABELS[mode]}
                      {unavailable ? " — no GitHub or GitLab configured" : ""}
                    </option>
                  );
                })}
            </select>
          ),
          "Where the task's branch goes after each turn that changes it.",
        )}
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
        {onCancel && (
          <button type="button" className="button" onClick={onCancel}>
            Cancel
          </button>
        )}
        <button type="submit" className="button button--primary" disabled={submitting}>
          {submitting ? "Creating…" : (submitLabel ?? "Create task")}
        </button>
      </div>
    </form>
  );
}
