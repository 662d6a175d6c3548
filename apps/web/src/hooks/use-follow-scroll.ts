/**
 * Keeps a scrolling box pinned to its newest content while the reader is at
 * the bottom, and lets go as soon as they scroll up to read (then
 * `following` is false and the view offers "Jump to latest").
 */
import { type RefObject, useCallback, useEffect, useLayoutEffect, useState } from "react";

/** How close to the bottom, in pixels, still counts as "at the bottom". */
const SLACK_PX = 48;

export function useFollowScroll(box: RefObject<HTMLElement | null>, contentVersion: unknown) {
  const [following, setFollowing] = useState(true);

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const onScroll = () => {
      const distance = element.scrollHeight - element.scrollTop - element.clientHeight;
      setFollowing(distance <= SLACK_PX);
    };
    element.addEventListener("scroll", onScroll, { passive: true });
    return () => element.removeEventListener("scroll", onScroll);
  }, [box]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: contentVersion is the trigger: new content arrived
  useLayoutEffect(() => {
    const element = box.current;
    if (element && following) element.scrollTop = element.scrollHeight;
  }, [contentVersion, following, box]);

  const jumpToLatest = useCallback(() => {
    const element = box.current;
    if (element) element.scrollTop = element.scrollHeight;
    setFollowing(true);
  }, [box]);

  return { following, jumpToLatest };
}
