/**
 * The changed files as a tree with +/− counts per file and per directory.
 * Selecting a file scrolls the diff to it. For a big change only the first
 * level starts open and a directory lists its first 100 entries until asked
 * for more, so the tree itself stays small.
 */
import { useState } from "react";
import type { TreeNode } from "../../diff-files";

function Counts({ node }: { node: TreeNode }) {
  return (
    <span className="tree-counts">
      <span className="diff-add">+{node.additions}</span> <span className="diff-del">−{node.deletions}</span>
    </span>
  );
}

function Directory({
  node,
  depth,
  large,
  onSelect,
}: {
  node: TreeNode;
  depth: number;
  large: boolean;
  onSelect: (index: number) => void;
}) {
  const [open, setOpen] = useState(!large || depth === 0);
  return (
    <li className="tree-dir">
      <button type="button" className="tree-item" aria-expanded={open} onClick={() => setOpen(!open)}>
        <span aria-hidden="true">{open ? "▾" : "▸"}</span> <span className="tree-name">{node.name}/</span>
        <Counts node={node} />
      </button>
      {open && <Nodes nodes={node.children} depth={depth + 1} large={large} onSelect={onSelect} />}
    </li>
  );
}

/** Entries a directory lists before "Show more", so a directory of thousands of files stays small. */
const PAGE = 100;

function Nodes({
  nodes,
  depth,
  large,
  onSelect,
}: {
  nodes: TreeNode[];
  depth: number;
  large: boolean;
  onSelect: (index: number) => void;
}) {
  const [shown, setShown] = useState(PAGE);
  return (
    <ul className="tree-level">
      {nodes.slice(0, shown).map((node) =>
        node.index === undefined ? (
          <Directory key={`d:${node.path}`} node={node} depth={depth} large={large} onSelect={onSelect} />
        ) : (
          <li key={`f:${node.path}`} className="tree-file">
            <button type="button" className="tree-item" onClick={() => onSelect(node.index!)} title={node.path}>
              <span className="tree-name">{node.name}</span>
              <Counts node={node} />
            </button>
          </li>
        ),
      )}
      {nodes.length > shown && (
        <li>
          <button type="button" className="tree-item tree-more" onClick={() => setShown(shown + PAGE * 5)}>
            Show {Math.min(nodes.length - shown, PAGE * 5)} more of {nodes.length - shown}
          </button>
        </li>
      )}
    </ul>
  );
}

export function FileTree({
  tree,
  large,
  onSelect,
}: {
  tree: TreeNode;
  large: boolean;
  onSelect: (index: number) => void;
}) {
  return (
    <nav className="file-tree diff-files" aria-label="Changed files">
      <Nodes nodes={tree.children} depth={0} large={large} onSelect={onSelect} />
    </nav>
  );
}
