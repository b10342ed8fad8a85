import { useState } from 'react'

export default function App() {
  const [count, setCount] = useState(0)
  return (
    <main>
      <h1 id="title">Hello from the preview</h1>
      <button id="counter" type="button" onClick={() => setCount((n) => n + 1)}>
        count is {count}
      </button>
    </main>
  )
}
